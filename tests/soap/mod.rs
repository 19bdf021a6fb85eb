//! soap tests

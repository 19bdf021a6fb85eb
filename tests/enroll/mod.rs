//! enroll tests

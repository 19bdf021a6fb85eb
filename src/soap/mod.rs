//! SOAP enrollment messages (in progress)

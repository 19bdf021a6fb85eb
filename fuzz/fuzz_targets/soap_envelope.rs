#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| winmdm::soap::fuzzing::soap_envelope(data));

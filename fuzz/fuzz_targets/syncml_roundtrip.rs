#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| winmdm::syncml::fuzzing::roundtrip(data));

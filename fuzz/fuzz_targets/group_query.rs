#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| winmdm::groups::query::fuzz(data));

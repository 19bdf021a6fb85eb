#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    winmdm::mdm::fuzzing::session_steps(data);
});

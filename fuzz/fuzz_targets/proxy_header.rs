#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| moat::fuzz::proxy_header(data));

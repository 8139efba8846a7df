//! Any bytes, as if read from a tabletop scenario file: validation must
//! answer with problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = breakglass::tabletop::scenario::parse_bytes("fuzz.yaml", data);
});

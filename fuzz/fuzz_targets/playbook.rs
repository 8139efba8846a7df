//! Any bytes, as if read from a playbook file: parsing, validation and variable
//! binding must answer with problems, never panic, within libFuzzer's time and
//! memory limits (set by `scripts/fuzz.sh`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pb) = breakglass::playbook::parse_bytes("fuzz.yaml", data) {
        let _ = pb.bind(&[]);
        let _ = pb.bind(&[("case_id".into(), "IR-1".into())]);
    }
});

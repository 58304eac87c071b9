//! Dead-letter JSON lines (what a file sink reads back): any bytes are
//! either an entry or an error; an entry serialises again, redacted.
#![no_main]

use buttress::dlq::DeadLetter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = serde_json::from_slice::<DeadLetter>(data) {
        let json = entry.to_redacted_json();
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
        let _ = entry.arguments_as::<serde_json::Value>();
    }
});

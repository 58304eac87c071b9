//! Configuration files in the three formats: any text is either loaded or
//! refused with `path: reason` lines; nothing panics, and what loads gives
//! call sites settings that either validate or are refused cleanly.
#![no_main]

use buttress::config::Format;
use buttress::{Policy, PolicyConfig, Registry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Toml,
        1 => Format::Yaml,
        _ => Format::Json,
    };
    let text = String::from_utf8_lossy(rest);
    let registry = Registry::new();
    match registry.load_str(&text, format) {
        Ok(()) => {
            for (provider, policy) in [("stripe", None), ("sms", Some("charge")), ("x", None)] {
                let config =
                    registry.settings_for(&PolicyConfig::named("stripe", "charge"), policy);
                let _ = config.validate();
                let _ = Policy::from_config(config, &registry);
                let _ = registry.breaker(provider).state();
            }
        }
        Err(errors) => {
            let message = errors.to_string();
            assert!(!message.is_empty());
        }
    }
});

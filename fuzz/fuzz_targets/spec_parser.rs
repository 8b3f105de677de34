//! Fuzz the gym spec parser and validator: any bytes must give a gym or a clear error,
//! never a panic, hang or crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The CEL parser panics on some inputs; hz-gym catches that and reports a syntax error.
    // libFuzzer's hook would abort on the caught panic, so keep it quiet; a panic that
    // escapes still aborts the run (libfuzzer-sys checks the closure's result).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(bundle) = hz_gym::GymBundle::from_json_str(text, None) {
        let _ = bundle.id();
        if let Ok(gym) = hz_gym::Gym::new(bundle) {
            let mut env = hz_gym::Env::new(gym, Default::default());
            if env.reset(0, &Default::default()).is_ok() {
                let _ = env.step(&serde_json::json!({"name": "x", "arguments": {}}));
            }
        }
    }
});

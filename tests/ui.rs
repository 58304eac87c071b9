//! Compile-time behaviour of the macros: every diagnostic has a `fail/`
//! case with its expected message, every tricky shape a `pass/` case.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}

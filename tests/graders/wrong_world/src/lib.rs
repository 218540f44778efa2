// The bindings generated in this crate export functions by symbol name,
// which the unsafe_code lint flags; this crate is a raw test fixture.
#![allow(unsafe_code)]

//! A component whose exports do not match the `grader` world: `grade` takes a
//! plain string and returns a number. The host must refuse it with a message
//! that says what does not match.

wit_bindgen::generate!({
    inline: r#"
        package assay:grader@0.1.0;

        world grader {
            export metadata: func() -> string;
            export grade: func(text: string) -> f64;
        }
    "#,
    world: "grader",
});

struct WrongWorld;

impl Guest for WrongWorld {
    fn metadata() -> String {
        "wrong_world".to_owned()
    }

    fn grade(text: String) -> f64 {
        text.len() as f64
    }
}

export!(WrongWorld);

//! With `--mine`, a chapter you have not finished yet panics on its `todo!()`: say which one and
//! what to do, instead of printing a panic message made for Rust developers.

pub fn explain_todo_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        match message.strip_prefix("not yet implemented: ") {
            Some(task) => {
                let place = info
                    .location()
                    .map(|location| format!(" ({}:{})", location.file(), location.line()))
                    .unwrap_or_default();
                eprintln!(
                    "error: your code does not do this yet: {task}{place}\n\
                     fix: finish it (`cargo xtask test` shows what is left), or run the solutions \
                     with `cargo xtask run` (no --mine)"
                );
            }
            None => default_hook(info),
        }
    }));
}

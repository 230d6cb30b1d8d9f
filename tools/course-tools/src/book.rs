//! `cargo xtask book`: builds the mdBook in book/ with the mdBook library (no separate
//! install), and serves it locally with `--serve`. xtask checks what the pages point at
//! (xtask/src/book.rs).

use crate::cargo::workspace_root;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Builds the book; returns the folder holding the HTML.
pub fn build() -> Result<PathBuf> {
    let root = workspace_root().join("book");
    let book = mdbook_driver::MDBook::load(&root)
        .with_context(|| format!("cannot load the book in {}", root.display()))?;
    let output = root.join(&book.config.build.build_dir);
    let output = output.canonicalize().unwrap_or(output);
    book.build().context("the book does not build")?;
    Ok(output)
}

pub fn run(serve: bool, port: u16) -> Result<()> {
    let output = build()?;
    let html = if output.join("html").is_dir() {
        output.join("html")
    } else {
        output
    };
    println!("built {}", html.join("index.html").display());
    if serve {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| {
                    format!("cannot listen on {address}; pick another port with --port")
                })?;
            println!("serving the book at http://{address}/ (Ctrl-C to stop)");
            let app =
                axum::Router::new().fallback_service(tower_http::services::ServeDir::new(html));
            axum::serve(listener, app)
                .await
                .context("the book server stopped")
        })?;
    }
    Ok(())
}

//! What xtask shares with tools/course-tools: the chapters of the course, running cargo and the
//! engine, the system packages a build needs, and running the tools/ crates (the model converter among them) as processes.

pub mod cargo;
pub mod chapters;
pub mod models;
pub mod run;
pub mod system;
pub mod tools;

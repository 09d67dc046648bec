//! Settings of the process the server runs in, read or applied once at
//! start: the memory the process may use (for a percentage budget),
//! transparent huge pages, and the open-file limit.

pub mod huge_pages;
pub mod memory_limit;
pub mod open_files;

//! Settings of the process the server runs in, read or applied once at
//! start: the memory the process may use (for a percentage budget) and
//! transparent huge pages.

pub mod huge_pages;
pub mod memory_limit;

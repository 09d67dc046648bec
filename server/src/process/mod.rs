//! Settings of the process the server runs in, read or applied once at
//! start: the memory the process may use (for a percentage budget),
//! transparent huge pages, the open-file limit, and when the allocator
//! gives freed memory back.

pub mod allocator;
pub mod huge_pages;
pub mod memory_limit;
pub mod open_files;

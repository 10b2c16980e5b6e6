//! kennel's process entry point (see `kennel_sys::entry_point`).

kennel_sys::entry_point!(crate::kennel_main);

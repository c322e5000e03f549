package main

// The commands below are declared with their full flags so that --help is
// already accurate, but their components are not built yet: they exit
// non-zero with "not implemented yet" rather than print made-up output.

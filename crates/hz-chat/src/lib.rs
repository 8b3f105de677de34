//! Chat templates, tool-call parsing and loss masks.

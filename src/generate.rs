//! Placeholder: being written (see helper task). Replaced by the real generator.

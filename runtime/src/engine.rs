//! (placeholder: engine)

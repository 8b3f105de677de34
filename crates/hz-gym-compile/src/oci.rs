//! OCI image layout compiler (being written).

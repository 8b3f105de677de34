//! Python Gymnasium package compiler (being written).

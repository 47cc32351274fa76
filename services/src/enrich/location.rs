//! Amazon Location Service geocoder (see below).

//! The larder API gateway.
//!
//! Stateless JSON:API CRUD over collections of JSON documents kept in SQLite or PostgreSQL,
//! with RFC 9457 problem details, ETags, idempotent POSTs, JSON Schema validation, OpenAPI and
//! reads served through the cache. Filled in by the gateway issue.

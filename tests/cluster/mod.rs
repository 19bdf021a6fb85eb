//! Several winmdm nodes on one PostgreSQL database (issue 14): what each node keeps in memory
//! stays correct when another node changes the store ([`nodes`]), and three real `winmdm serve`
//! processes sharing one database and one set of data-directory files ([`processes`]).
//! Every test here prints `SKIP` and passes when PostgreSQL is unreachable (it fails instead
//! with `WINMDM_REQUIRE_POSTGRES=1`).

mod crash;
mod nodes;
mod processes;

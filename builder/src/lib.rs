//! Image builds from a Dockerfile (issue #8), as dockerd's classic builder does them.
//!
//! Its own crate because the Dockerfile language (parsing, word expansion), `.dockerignore`
//! matching and the build cache's rules are independent of the HTTP server and of the
//! stores; the daemon wires the steps to the runtime and the image store.
//!
//! So far, the language parts:
//! - [`parser`]: a Dockerfile into instructions with their line numbers: parser directives
//!   (`# escape=`, `# syntax=`), comments, line continuations, JSON (exec) and shell forms,
//!   `--flag=value` options, errors naming file and line;
//! - [`words`]: variable substitution and quoting as Docker's shell lexer does it (`$VAR`,
//!   `${VAR}`, `${VAR:-default}`, `${VAR:+alt}`, `-`, `+`, `?` forms, quotes, escapes);
//! - [`instructions`]: nodes into typed instructions, checked (argument counts, flags, JSON
//!   form, ONBUILD triggers, FROM first) before anything runs;
//! - [`plan`]: stages, their bases (image, earlier stage, scratch), ARGs before the first
//!   FROM, and the stages a target needs (others are skipped); unused build args;
//! - [`cache`]: step keys (parent image, expanded instruction, source checksum or build
//!   args) to the images they made, persisted;
//! - [`context`]: COPY/ADD sources resolved in the context with `openat2(RESOLVE_IN_ROOT)`
//!   (wildcards, `..` refused past the root, symlinks kept inside), and the content checksum
//!   the cache keys them by;
//! - [`state`]: what each instruction does to a stage (its config, the build args in scope)
//!   and the work left for the daemon (RUN's argv and env, COPY/ADD's expanded operands);
//!   the image config and history a step leaves;
//! - [`copy`]: a COPY as a tar stream of what lands in the image (directory contents, file
//!   names, root ownership unless `--chown`, `--chmod`, missing parents first);
//! - [`ignore`]: `.dockerignore` patterns with Docker's semantics (`**`, `!` exceptions, a
//!   pattern matching a parent directory).

pub mod cache;
pub mod context;
pub mod copy;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod state;
pub mod words;

//! The life of an installed app (DESIGN 6, 7): the Update command, the state journal, and
//! activation with its hook, rollback and reboot.

mod activation;
mod update;

//! Minimal leveled logging to standard error. The level is set once at start-up from
//! `COREMQ_LOG`; a disabled level costs one relaxed load.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Sets the process-wide level.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages at `level` are printed.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub fn write(level: LogLevel, args: std::fmt::Arguments<'_>) {
    let tag = match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
    };
    eprintln!("coremq {tag}: {args}");
}

/// `log!(Info, "…", args)`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        if $crate::log::enabled($crate::config::LogLevel::$level) {
            $crate::log::write($crate::config::LogLevel::$level, format_args!($($arg)*));
        }
    };
}

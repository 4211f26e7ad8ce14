//! Replacing what an environment serves without changing anything in place: a database and a
//! file-store folder are only ever **renamed**. A replacement is prepared under its own name; the
//! cut-over renames the live one to a kept name and the replacement to the live name; cutting
//! back does the opposite. Each is one or two renames, and each looks at what exists before
//! acting, so running it again after a crash between the two renames finishes the job, and
//! running it after it finished does nothing. Nothing is ever dropped here: what was replaced
//! stays under its kept name until released.

use std::future::Future;

use crate::error::{Error, Result};

/// Something whose objects are swapped by renaming: the PostgreSQL server's databases, the file
/// store's folders.
pub trait Renaming: Sync {
    /// What is renamed, for messages ("database", "file store folder").
    fn what(&self) -> &'static str;
    fn exists(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    fn rename(&self, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send;
}

/// The three names of a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap<'a> {
    /// The name the ERP serves.
    pub live: &'a str,
    /// The prepared replacement (a restored backup, an updated copy).
    pub replacement: &'a str,
    /// Where the replaced one is kept until released; unique to the operation.
    pub kept: &'a str,
}

/// Puts the replacement in place of the live one, keeping the live one under `kept`.
pub async fn cut_over<R: Renaming>(store: &R, swap: Swap<'_>) -> Result<()> {
    let Swap { live, replacement, kept } = swap;
    match state(store, swap).await? {
        // Not started.
        (true, true, false) => {
            store.rename(live, kept).await?;
            store.rename(replacement, live).await
        }
        // Interrupted between the two renames.
        (false, true, true) => store.rename(replacement, live).await,
        // Done already.
        (true, false, true) => Ok(()),
        found => Err(unexpected(store, "cut over", swap, found)),
    }
}

/// Undoes [`cut_over`]: the kept one is live again, and what had replaced it is back under the
/// replacement's name (for the caller to drop or keep for inspection).
pub async fn cut_back<R: Renaming>(store: &R, swap: Swap<'_>) -> Result<()> {
    let Swap { live, replacement, kept } = swap;
    match state(store, swap).await? {
        // Cut over: undo both renames.
        (true, false, true) => {
            store.rename(live, replacement).await?;
            store.rename(kept, live).await
        }
        // Interrupted, either cutting over or cutting back: the original goes back.
        (false, true, true) => store.rename(kept, live).await,
        // Never cut over, or cut back already.
        (true, true, false) | (true, false, false) => Ok(()),
        found => Err(unexpected(store, "cut back", swap, found)),
    }
}

/// [`cut_over`] for a store that may have had nothing under the live name when the operation
/// began (`had_live` false: a first test copy has no database, a database without attachments
/// has no file-store folder): then there is nothing to keep and it is a single rename, done
/// already if the live name exists and the replacement's is gone. `had_live` must be recorded
/// by the operation's journal, not looked up again: after the rename the two cases look alike.
pub async fn put_in_place<R: Renaming>(store: &R, swap: Swap<'_>, had_live: bool) -> Result<()> {
    if had_live {
        return cut_over(store, swap).await;
    }
    match (store.exists(swap.live).await?, store.exists(swap.replacement).await?) {
        (false, true) => store.rename(swap.replacement, swap.live).await,
        (true, false) => Ok(()),
        (live, replacement) => Err(Error::Conflict(format!(
            "cannot put the {} in place: {} {}, {} {}; nothing was changed",
            store.what(),
            swap.live,
            if live { "exists (it did not when the operation began)" } else { "is missing" },
            swap.replacement,
            if replacement { "exists" } else { "is missing" },
        ))),
    }
}

/// Undoes [`put_in_place`]: what replaced the live one is back under the replacement's name
/// (for the caller to drop), and with `had_live` the kept one is live again. Without
/// `had_live`, call it only once the replacement was made: before that, a live one that
/// appeared meanwhile would be taken for it.
pub async fn take_out<R: Renaming>(store: &R, swap: Swap<'_>, had_live: bool) -> Result<()> {
    if had_live {
        return cut_back(store, swap).await;
    }
    match (store.exists(swap.live).await?, store.exists(swap.replacement).await?) {
        (true, false) => store.rename(swap.live, swap.replacement).await,
        // Never put in place (whatever the live name holds now is not the replacement), or
        // taken out already.
        _ => Ok(()),
    }
}

async fn state<R: Renaming>(store: &R, swap: Swap<'_>) -> Result<(bool, bool, bool)> {
    Ok((store.exists(swap.live).await?, store.exists(swap.replacement).await?, store.exists(swap.kept).await?))
}

/// A state no interrupted swap leaves: something else touched these names. Nothing is done, so
/// nothing is lost; a person must look.
fn unexpected<R: Renaming>(
    store: &R,
    doing: &str,
    swap: Swap<'_>,
    (live, replacement, kept): (bool, bool, bool),
) -> Error {
    let show = |name: &str, exists: bool| format!("{name} {}", if exists { "exists" } else { "is missing" });
    Error::Conflict(format!(
        "cannot {doing} the {what}: {}, {}, {}; nothing was changed",
        show(swap.live, live),
        show(swap.replacement, replacement),
        show(swap.kept, kept),
        what = store.what()
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;

    /// Names in memory, with a crash after a given number of renames: the pure logic of the
    /// swap, checked at every point it can be interrupted. (The real databases and folders are
    /// exercised by the operations' tests.)
    struct Names {
        names: Mutex<BTreeSet<String>>,
        renames_left: Mutex<Option<usize>>,
    }

    impl Names {
        fn new(names: &[&str], crash_after: Option<usize>) -> Self {
            Self {
                names: Mutex::new(names.iter().map(|n| n.to_string()).collect()),
                renames_left: Mutex::new(crash_after),
            }
        }

        fn get(&self) -> Vec<String> {
            self.names.lock().unwrap().iter().cloned().collect()
        }
    }

    impl Renaming for Names {
        fn what(&self) -> &'static str {
            "database"
        }

        async fn exists(&self, name: &str) -> Result<bool> {
            Ok(self.names.lock().unwrap().contains(name))
        }

        async fn rename(&self, from: &str, to: &str) -> Result<()> {
            let mut left = self.renames_left.lock().unwrap();
            if *left == Some(0) {
                return Err(Error::Invalid("crashed".into()));
            }
            *left = left.map(|n| n - 1);
            let mut names = self.names.lock().unwrap();
            assert!(names.remove(from) && names.insert(to.to_string()), "rename {from} → {to} in {names:?}");
            Ok(())
        }
    }

    const SWAP: Swap<'static> = Swap { live: "erp", replacement: "erp__work", kept: "erp__kept" };

    #[tokio::test]
    async fn a_cut_over_interrupted_anywhere_finishes_when_run_again() {
        for crash_after in 0..2 {
            let names = Names::new(&["erp", "erp__work"], Some(crash_after));
            assert!(cut_over(&names, SWAP).await.is_err());
            *names.renames_left.lock().unwrap() = None;
            cut_over(&names, SWAP).await.unwrap();
            assert_eq!(names.get(), ["erp", "erp__kept"], "crash after {crash_after} renames");
            cut_over(&names, SWAP).await.unwrap();
            assert_eq!(names.get(), ["erp", "erp__kept"], "a second run changes nothing");
        }
    }

    #[tokio::test]
    async fn a_cut_back_interrupted_anywhere_brings_the_original_back() {
        // Interrupted while cutting over, then cut back.
        for crash_after in 0..2 {
            let names = Names::new(&["erp", "erp__work"], Some(crash_after));
            let _ = cut_over(&names, SWAP).await;
            *names.renames_left.lock().unwrap() = None;
            cut_back(&names, SWAP).await.unwrap();
            assert_eq!(names.get(), ["erp", "erp__work"], "crash after {crash_after} renames");
        }
        // Cut over, then cut back interrupted anywhere and run again.
        for crash_after in 0..2 {
            let names = Names::new(&["erp", "erp__work"], None);
            cut_over(&names, SWAP).await.unwrap();
            *names.renames_left.lock().unwrap() = Some(crash_after);
            assert!(cut_back(&names, SWAP).await.is_err());
            *names.renames_left.lock().unwrap() = None;
            cut_back(&names, SWAP).await.unwrap();
            cut_back(&names, SWAP).await.unwrap();
            assert_eq!(names.get(), ["erp", "erp__work"], "crash after {crash_after} renames");
        }
    }

    #[tokio::test]
    async fn a_state_no_swap_leaves_changes_nothing() {
        for found in [&["erp__work"][..], &["erp", "erp__work", "erp__kept"], &["erp__kept"], &[]] {
            let names = Names::new(found, None);
            let error = cut_over(&names, SWAP).await.unwrap_err();
            assert!(error.to_string().contains("nothing was changed"), "{error}");
            assert!(cut_back(&names, SWAP).await.is_err(), "{found:?}");
            let mut expected: Vec<String> = found.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(names.get(), expected);
        }
    }
}

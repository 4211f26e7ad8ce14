//! The file store of a real Tryton database: attachments follow a copied database only if its
//! folder is copied too, and the check catches what Tryton itself does not report.

use crate::common;

use e2e::tryton::fixture;
use erp_agent::database::ErpState;
use erp_agent::filestore::FileProblem;

#[tokio::test]
async fn attachments_follow_a_copied_folder_and_the_check_catches_a_missing_one() {
    let tryton = common::tryton("7.0").await;
    let production = fixture::read_back(&tryton.install, &tryton.config, tryton.template.as_str()).await.unwrap();
    assert_eq!((production.attachments, production.attachment_bytes), (3, 3 * 4096));

    // Database and folder copied together: the same attachments, byte for byte.
    let copy = tryton.copy_of_template("with_files").await;
    let inventory = tryton.store.inventory(copy.as_str()).await.unwrap();
    assert_eq!(inventory, tryton.store.inventory(tryton.template.as_str()).await.unwrap());
    assert_eq!((inventory.files, inventory.bytes), (3, 3 * 4096));
    assert_eq!(fixture::read_back(&tryton.install, &tryton.config, copy.as_str()).await.unwrap(), production);
    let mut connection = tryton.server.connect(copy.as_str()).await.unwrap();
    assert_eq!(tryton.store.check_attachments(&mut connection, copy.as_str()).await.unwrap(), []);

    // The database alone: Tryton reads the attachments as empty, without an error…
    let bare = common::unique_name("without_files");
    tryton.server.copy(&tryton.template, &bare, ErpState::MayBeRunning).await.unwrap();
    let read = fixture::read_back(&tryton.install, &tryton.config, bare.as_str()).await.unwrap();
    assert_eq!((read.attachments, read.attachment_bytes), (3, 0));
    // …and the check names every one.
    let mut connection = tryton.server.connect(bare.as_str()).await.unwrap();
    let bad = tryton.store.check_attachments(&mut connection, bare.as_str()).await.unwrap();
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad.iter().all(|b| b.problem == FileProblem::Missing), "{bad:?}");

    // A damaged file is caught too.
    let first = &bad[0];
    let path = erp_agent::filestore::file_path(&tryton.store.folder(copy.as_str()).unwrap(), &first.file_id).unwrap();
    std::fs::remove_file(&path).unwrap(); // a link: the template's file stays intact
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let mut connection = tryton.server.connect(copy.as_str()).await.unwrap();
    let bad = tryton.store.check_attachments(&mut connection, copy.as_str()).await.unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0].attachment_id, &bad[0].problem), (first.attachment_id, &FileProblem::ContentMismatch));
    assert_eq!(
        fixture::read_back(&tryton.install, &tryton.config, tryton.template.as_str()).await.unwrap(),
        production
    );
}

//! The native file dialogs, end to end: Browse… in the gallery opens the system's Open
//! dialog (GTK), a gym typed into it opens in the editor; Browse… in Save as opens the Save
//! dialog at the current file, a name typed without the extension becomes `<name>.gym.json`,
//! and Save writes there. The dialogs are native windows, outside what WebDriver sees: the
//! test types into them through the X server (xdotool).

use anyhow::{ensure, Context, Result};
use hz_e2e::App;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_save_as_through_the_system_dialogs() -> Result<()> {
    if !hz_e2e::require_or_skip() {
        return Ok(());
    }
    let mut app = App::start("file-dialogs").await?;
    let result = scenario(&mut app).await;
    if result.is_err() {
        let _ = app.shot("failure").await;
    }
    app.close().await?;
    result
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

async fn gym_path(app: &App) -> Result<String> {
    Ok(app.wait("#gym-path").await?.attr("title").await?.unwrap_or_default())
}

/// Click a Browse… button until it is disabled, which it is while its dialog is open: a
/// click WebKit's WebDriver reported but the page never got is clicked again (at most 3).
async fn browse(app: &App, button: &str) -> Result<()> {
    let disabled = format!("return document.querySelector({button:?}).disabled");
    for _ in 0..3 {
        app.click(button).await?;
        for _ in 0..20 {
            if app.js(&disabled).await?.as_bool() == Some(true) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    anyhow::bail!("{button} never opened its dialog")
}

async fn scenario(app: &mut App) -> Result<()> {
    // A gym somewhere the app has never seen: a copy of a template with its fixtures.
    let dir = app.data_dir.path().join("elsewhere").join("triage");
    copy_dir(&hz_e2e::repo().join("gym-templates").join("email-triage"), &dir)?;
    let gym = dir.join("email-triage.gym.json");
    ensure!(gym.is_file(), "the template has {}", gym.display());

    // 1. Open: the system dialog, a path typed into its location field.
    app.wait("#gallery").await?;
    browse(app, "#open-browse").await?;
    let path = gym.to_str().context("a UTF-8 path")?;
    app.x_window("^Open a gym$", &["key", "--clearmodifiers", "ctrl+l", "type", "--delay", "5", path])?;
    app.x_confirm("^Open a gym$").await?;
    app.until("the picked gym is open", || async { Ok(gym_path(app).await? == path) }).await?;
    app.until("the gym is valid", || async { Ok(app.text("#problems").await? == "No problems") }).await?;
    app.shot("opened-through-dialog").await?;

    // 2. Save as: the dialog starts at the current file; a bare name gets the extension.
    app.click("#save-as").await?;
    browse(app, "#save-as-browse").await?;
    app.x_window("^Save the gym as$", &["key", "--clearmodifiers", "ctrl+a", "type", "--delay", "5", "triage-copy"])?;
    app.x_confirm("^Save the gym as$").await?;
    let want = dir.join("triage-copy.gym.json");
    let want = want.to_str().context("a UTF-8 path")?;
    app.until("the dialog fills the path in", || async {
        Ok(app.wait("#save-as-path").await?.prop("value").await?.as_deref() == Some(want))
    })
    .await?;
    app.shot("save-as-picked").await?;
    app.click("#save-as-ok").await?;
    app.until("the gym is saved there", || async { Ok(gym_path(app).await? == want) }).await?;
    let ids = |path: &str| -> Result<Vec<String>> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let nodes = v["nodes"].as_array().context("a gym has nodes")?;
        Ok(nodes.iter().filter_map(|n| n["id"].as_str().map(str::to_string)).collect())
    };
    let original = ids(path)?;
    ensure!(!original.is_empty() && ids(want)? == original, "the copy holds the same nodes");
    app.shot("saved-through-dialog").await?;
    Ok(())
}

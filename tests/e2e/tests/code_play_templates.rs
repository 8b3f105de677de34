//! The code view, the play-test form and the templates gallery end to end, in the real app
//! under Xvfb: open a template from the gallery, edit its JSON in Monaco (typed and pasted)
//! and see the canvas follow, break the JSON and see the app's markers in Monaco while the
//! canvas stays, play the gym through the tool-call form with a seed, and Save As. A
//! screenshot of each step is saved under `e2e-artifacts/code-play-templates/`.

use anyhow::{ensure, Context, Result};
use hz_e2e::App;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_code_view_play_form_save_as() -> Result<()> {
    if !hz_e2e::require_or_skip() {
        return Ok(());
    }
    let mut app = App::start("code-play-templates").await?;
    let result = scenario(&mut app).await;
    if result.is_err() {
        let _ = app.shot("failure").await;
    }
    app.close().await?;
    result
}

const TEMPLATE: &str = "sql-analyst";

fn template_text() -> Result<String> {
    let path = hz_e2e::repo().join("gym-templates").join(TEMPLATE).join(format!("{TEMPLATE}.gym.json"));
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The path of the file the editor works on, as the header shows it (in full in its title;
/// the text may be cut short with an ellipsis).
async fn gym_path(app: &App) -> Result<String> {
    Ok(app.wait("#gym-path").await?.attr("title").await?.unwrap_or_default())
}

async fn problems(app: &App) -> Result<String> {
    app.text("#problems").await
}

/// A node's title as the canvas draws it: found with the graph search, which selects the
/// node and zooms to it (zoomed out to the whole graph, nodes are painted on the scene, not
/// HTML).
async fn node_title(app: &App, id: &str) -> Result<String> {
    app.fill("#graph-search", id).await?;
    app.wait("#graph-search").await?.send_keys("\u{E007}").await?;
    let title = app.wait(&format!("[data-node-id='{id}'] .lf-node-title")).await?;
    // The text content: a title cut short by CSS reads as empty through WebDriver.
    Ok(title.prop("textContent").await?.unwrap_or_default())
}

/// Nodes and wires on the canvas, fitted to the view (off-screen ones are not drawn), as the
/// canvas counts them in the frame it last drew.
async fn drawn(app: &App) -> Result<(usize, usize)> {
    app.click("#fit").await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let counts = app.js("const d = document.querySelector('.lf-canvas').dataset; return [Number(d.nodesDrawn), Number(d.wiresDrawn)]").await?;
    let n = |i: usize| counts[i].as_u64().map(|v| v as usize).context("the canvas reports what it drew");
    Ok((n(0)?, n(1)?))
}

async fn scenario(app: &mut App) -> Result<()> {
    let template_before = template_text()?;

    // 1. Open a copy of a template from the gallery.
    app.wait(&format!(".hz-card[data-template='{TEMPLATE}']")).await?;
    app.click(&format!(".hz-card[data-template='{TEMPLATE}'] .hz-open-template")).await?;
    // Fitted to the view, the template's nodes are painted on the canvas's scene.
    app.wait(".lf-canvas[data-nodes-drawn='24']").await?;
    app.until("the template is valid", || async { Ok(problems(app).await? == "No problems") }).await?;
    let copy = app.data_dir.path().join("gyms").join(TEMPLATE).join(format!("{TEMPLATE}.gym.json"));
    app.until("the header shows the copy's path", || async { Ok(gym_path(app).await? == copy.to_string_lossy()) })
        .await?;
    ensure!(copy.is_file(), "the copy is on disk at {}", copy.display());
    let (nodes, wires) = drawn(app).await?;
    ensure!(nodes == 24, "sql-analyst has 24 nodes on the canvas, not {nodes}");
    ensure!(wires > 20, "and its wires: {wires}");
    ensure!(node_title(app, "step_cost").await? == "Step cost");
    app.shot("template-opened").await?;

    // 2. Edit the JSON in Monaco: type over a node's label; the canvas follows.
    app.click("#tab-code").await?;
    app.click("#code-json").await?;
    app.until("Monaco shows the gym", || async { Ok(app.code_text().await?.contains("\"Step cost\"")) }).await?;
    let kind = app.js("return window.hzMonaco.kind('json')").await?;
    ensure!(kind == "monaco", "the code view should be Monaco, got {kind}");
    app.code_select("Step cost").await?;
    app.type_keys("Cost per step").await?;
    app.until("the canvas shows the typed label", || async {
        Ok(node_title(app, "step_cost").await? == "Cost per step")
    })
    .await?;
    ensure!(app.code_text().await?.contains("\"label\": \"Cost per step\""));
    app.shot("json-typed-label").await?;

    // A pasted node (one edit operation) appears on the canvas, and Undo on the canvas takes
    // it out of the JSON again.
    let note = r#"
    {
      "id": "json_note",
      "kind": "documentation",
      "label": "Added in the JSON",
      "position": { "x": -320, "y": -160 },
      "text": "A note written in the code view."
    },"#;
    app.code_insert_after("\"nodes\": [", note).await?;
    app.until("the pasted node is on the canvas", || async { Ok(drawn(app).await?.0 == nodes + 1) }).await?;
    ensure!(drawn(app).await? == (nodes + 1, wires), "one more node, the same wires");
    ensure!(node_title(app, "json_note").await? == "Added in the JSON");
    let undo = app.wait("#undo").await?.attr("title").await?.unwrap_or_default();
    ensure!(undo == "Undo Edit JSON", "the JSON edit is one undo step on the canvas, not {undo:?}");
    app.shot("json-pasted-node").await?;
    app.click("#undo").await?;
    app.until("undo removes the node", || async { Ok(drawn(app).await?.0 == nodes) }).await?;
    app.fill("#graph-search", "json_note").await?;
    app.wait("#graph-search").await?.send_keys("\u{E007}").await?;
    app.until("the graph search no longer finds it", || async {
        Ok(app.text("#status").await?.contains("No matching nodes"))
    })
    .await?;
    app.until("the JSON follows the undo", || async { Ok(!app.code_text().await?.contains("json_note")) }).await?;
    ensure!(app.code_text().await?.contains("\"label\": \"Cost per step\""), "only the paste is undone");

    // 3. Invalid JSON: the app's marker sits on the broken line, the canvas stays as it was.
    app.code_select("-0.02").await?;
    app.type_keys("oops").await?;
    let text = app.code_text().await?;
    let broken_line =
        text.lines().position(|l| l.contains("\"value\": oops")).context("the typed text is in the editor")? + 1;
    app.until("the invalid JSON is marked", || async {
        Ok(app.code_markers().await?.iter().any(|m| m["message"].as_str().unwrap_or_default().contains("invalid JSON")))
    })
    .await?;
    let markers = app.code_markers().await?;
    let marker = markers
        .iter()
        .find(|m| m["message"].as_str().unwrap_or_default().contains("invalid JSON"))
        .context("an invalid-JSON marker")?;
    ensure!(marker["line"].as_u64() == Some(broken_line as u64), "marker {marker} should be on line {broken_line}");
    ensure!(marker["severity"].as_u64() == Some(8), "an error marker: {marker}");
    ensure!(problems(app).await? == "1 problem");
    ensure!(drawn(app).await? == (nodes, wires), "the canvas keeps every node and wire");
    app.shot("json-invalid-marker").await?;
    ensure!(node_title(app, "step_cost").await? == "Cost per step");
    // Typing the number back makes it valid again and clears the marker.
    app.code_select("oops").await?;
    app.type_keys("-0.02").await?;
    app.until("the marker is gone", || async {
        Ok(app.code_markers().await?.iter().all(|m| m["severity"].as_u64() != Some(8))
            && problems(app).await? == "No problems")
    })
    .await?;
    ensure!(drawn(app).await? == (nodes, wires));
    app.shot("json-fixed").await?;

    // 4. Play through the tool-call form: reset with a seed, run the task's reference
    //    solution tool call by tool call, see observations and itemised rewards.
    app.click("#tab-play").await?;
    app.fill("#play-seed", "3").await?;
    app.click("#play-reset").await?;
    let first = app.wait(".hz-turn").await?;
    let task_id = first.attr("data-task").await?.context("the turn names its task")?;
    let opening = app.text(".hz-turn .hz-obs").await?;
    let spec: Value = serde_json::from_str(&template_before)?;
    let task = spec["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == task_id.as_str()))
        .with_context(|| format!("task {task_id:?} is one of the template's"))?
        .clone();
    let question = task["question"].as_str().unwrap_or_default();
    ensure!(opening.contains(question), "the first observation asks {question:?}: {opening}");
    ensure!(app.text(".hz-turn .hz-turn-meta").await? == format!("task {task_id} · step 0/8"));
    // The same seed draws the same task.
    app.click("#play-reset").await?;
    app.until("the reset is done again", || async { Ok(app.count(".hz-turn").await? == 1) }).await?;
    ensure!(app.wait(".hz-turn").await?.attr("data-task").await?.as_deref() == Some(task_id.as_str()));
    app.shot("play-reset-seed-3").await?;

    let tools: Vec<String> = {
        let mut out = Vec::new();
        for o in app.client.find_all(fantoccini::Locator::Css("#play-tool option")).await? {
            out.push(o.attr("value").await?.unwrap_or_default());
        }
        out
    };
    ensure!(tools == ["", "run_sql", "answer"], "the form offers the gym's tools: {tools:?}");
    // Arguments that are not JSON are refused in the form, before anything is sent.
    app.wait("#play-tool").await?.select_by_value("run_sql").await?;
    app.fill("#play-args", "{\"sql\": ").await?;
    app.click("#play-send").await?;
    let err = app.text("#play-error").await?;
    ensure!(err.contains("arguments are not valid JSON"), "form error: {err}");
    ensure!(app.count(".hz-turn").await? == 1, "nothing was sent");

    let solution = task["solution"].as_array().cloned().unwrap_or_default();
    ensure!(solution.len() == 2, "the reference solution is a query, then the answer");
    for (i, call) in solution.iter().enumerate() {
        let tool = call["name"].as_str().unwrap_or_default();
        app.wait("#play-tool").await?.select_by_value(tool).await?;
        app.fill("#play-args", &call["arguments"].to_string()).await?;
        app.click("#play-send").await?;
        app.until("the step is played", || async { Ok(app.count(".hz-turn").await? == i + 2) }).await?;
        if i == 0 {
            ensure!(app.count("#play-error").await? == 0, "the query is accepted");
            let turn = app.text(".hz-turn:nth-child(2)").await?;
            ensure!(turn.contains("action:") && turn.contains("run_sql"), "turn 2 shows the call: {turn}");
            ensure!(turn.contains("step_cost") && turn.contains("-0.020"), "the step cost is itemised: {turn}");
            ensure!(!turn.contains("terminated"), "a query does not end the episode");
            let obs = app.text(".hz-turn:nth-child(2) .hz-obs").await?;
            let expected =
                task["expected"].as_str().map(str::to_string).unwrap_or_else(|| task["expected"].to_string());
            ensure!(obs.contains(&expected), "the query's result shows {expected:?}: {obs}");
            app.shot("play-tool-call-query").await?;
        }
    }
    let last = app.text(".hz-turn:nth-child(3)").await?;
    ensure!(last.contains("terminated"), "the answer ends the episode: {last}");
    ensure!(last.contains("reward_correct") && last.contains("+1.000"), "the correct answer earns +1: {last}");
    ensure!(last.contains("(skipped)"), "the overseer term is skipped without an overseer: {last}");
    ensure!(app.count("#play-send").await? == 0, "no more actions after the episode ends");
    ensure!(app.text(".hz-turn:nth-child(3) .hz-turn-meta").await? == format!("task {task_id} · step 2/8"));
    app.shot("play-answer-terminated").await?;

    // 5. Save as: a new file next to the copy (its fixtures stay beside it); then open it.
    ensure!(app.count("#dirty.hz-hidden").await? == 0, "the label edit is not saved yet");
    let saved = copy.with_file_name(format!("{TEMPLATE}-renamed-cost.gym.json"));
    app.click("#save-as").await?;
    let prefilled = app.wait("#save-as-path").await?.prop("value").await?.unwrap_or_default();
    ensure!(prefilled == copy.to_string_lossy(), "Save as starts from the current path, not {prefilled:?}");
    app.fill("#save-as-path", &saved.to_string_lossy()).await?;
    app.shot("save-as").await?;
    app.click("#save-as-ok").await?;
    app.until("the gym is saved under the new name", || async {
        Ok(app.text("#status").await? == format!("Saved {}", saved.display()))
    })
    .await?;
    ensure!(gym_path(app).await? == saved.to_string_lossy(), "the editor now works on the new file");
    ensure!(app.count("#dirty.hz-hidden").await? == 1, "saved work is clean");
    let on_disk = std::fs::read_to_string(&saved)?;
    ensure!(on_disk.contains("\"label\": \"Cost per step\""), "the new file has the edit");
    ensure!(!std::fs::read_to_string(&copy)?.contains("Cost per step"), "the first copy is untouched");
    ensure!(template_text()? == template_before, "the bundled template is untouched");
    app.until("the saved gym is valid where it is", || async { Ok(problems(app).await? == "No problems") }).await?;
    app.shot("saved-as").await?;

    app.click("#open-gallery").await?;
    app.fill("#open-path", &saved.to_string_lossy()).await?;
    app.click("#open-path-go").await?;
    app.until("the saved file is open", || async {
        Ok(app.count("#gallery").await? == 0 && gym_path(app).await? == saved.to_string_lossy())
    })
    .await?;
    ensure!(drawn(app).await? == (nodes, wires));
    ensure!(node_title(app, "step_cost").await? == "Cost per step");
    app.shot("saved-reopened").await?;
    Ok(())
}

// Starts the wasm UI (an external module: the CSP allows no inline script).
import init from './hz_ui.js';
init({ module_or_path: './hz_ui_bg.wasm' });

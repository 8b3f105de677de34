// Loads the bundled Monaco editor (AMD build, same origin: no remote content) and gives the
// wasm UI a small API over it. Falls back to a plain text area when Monaco is missing.
(function () {
  'use strict';
  var editors = {};
  var callbacks = {};
  var pending = [];
  var monacoReady = false;
  var monacoFailed = false;

  function fallback(id, el, value, readOnly) {
    var ta = document.createElement('textarea');
    ta.className = 'hz-code-fallback';
    ta.value = value;
    ta.readOnly = readOnly;
    ta.spellcheck = false;
    ta.addEventListener('input', function () { if (callbacks[id]) callbacks[id](ta.value); });
    el.appendChild(ta);
    editors[id] = {
      kind: 'textarea',
      getValue: function () { return ta.value; },
      setValue: function (v) { ta.value = v; },
      setMarkers: function () {},
      layout: function () {}
    };
  }

  function realCreate(id, el, value, language, readOnly) {
    if (!monacoReady) { fallback(id, el, value, readOnly); return; }
    var model = monaco.editor.createModel(value, language);
    var ed = monaco.editor.create(el, {
      model: model, readOnly: readOnly, automaticLayout: true, theme: 'vs-dark',
      minimap: { enabled: false }, fontSize: 12, scrollBeyondLastLine: false, tabSize: 2
    });
    var silent = false;
    ed.onDidChangeModelContent(function () {
      if (!silent && callbacks[id]) callbacks[id](ed.getValue());
    });
    editors[id] = {
      kind: 'monaco',
      editor: ed,
      getValue: function () { return ed.getValue(); },
      setValue: function (v) {
        if (ed.getValue() === v) return;
        var pos = ed.getPosition();
        var top = ed.getScrollTop();
        silent = true;
        try { ed.setValue(v); } finally { silent = false; }
        if (pos) ed.setPosition(pos);
        ed.setScrollTop(top);
      },
      setMarkers: function (list) { monaco.editor.setModelMarkers(model, 'hz', list); },
      layout: function () { ed.layout(); }
    };
  }

  window.hzMonaco = {
    create: function (id, el, value, language, readOnly) {
      if (monacoReady || monacoFailed) realCreate(id, el, value, language, readOnly);
      else pending.push([id, el, value, language, readOnly]);
    },
    setValue: function (id, v) {
      var e = editors[id];
      if (e) e.setValue(v);
      else pending.forEach(function (p) { if (p[0] === id) p[2] = v; });
    },
    getValue: function (id) { var e = editors[id]; return e ? e.getValue() : null; },
    kind: function (id) { var e = editors[id]; return e ? e.kind : null; },
    onChange: function (id, cb) { callbacks[id] = cb; },
    setMarkers: function (id, json) {
      var e = editors[id];
      if (e) e.setMarkers(JSON.parse(json));
    },
    layout: function (id) { var e = editors[id]; if (e) e.layout(); }
  };

  function flush() {
    var list = pending; pending = [];
    list.forEach(function (p) { realCreate(p[0], p[1], p[2], p[3], p[4]); });
  }

  if (typeof require === 'function' && require.config) {
    require.config({ paths: { vs: 'monaco/vs' } });
    require(['vs/editor/editor.main'], function () { monacoReady = true; flush(); },
      function (err) { console.error('Monaco failed to load', err); monacoFailed = true; flush(); });
  } else {
    monacoFailed = true;
  }
})();

// The try-it page: sends an image to a model's translate_image signature through TF Serving's
// REST API and shows input and translation side by side. No build step, no dependencies.
//
// Query parameters: ?server=http://host:8501 talks to another server (which then needs
// --rest_api_enable_cors_support); ?models=a,b names its models (TF Serving cannot list them).
'use strict';

const SIGNATURE = 'translate_image';
const params = new URLSearchParams(window.location.search);
const API = (params.get('server') || '').replace(/\/+$/, '');
const state = {image: null, seq: 0, outputUrl: null};
const $ = (id) => document.getElementById(id);

function setState(name, text) {
  document.body.dataset.state = name;
  $('status').textContent = text || '';
}

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = false;
  setState('error', 'The server refused the request:');
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

// Uint8Array <-> base64, in slices so that large images do not overflow the call stack.
function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function getJson(url) {
  const response = await fetch(url, {cache: 'no-store'});
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return {ok: response.ok, status: response.status, body};
}

function modelUrl(name) {
  return `${API}/v1/models/${encodeURIComponent(name)}`;
}

function describeLimits(config) {
  const parts = [];
  if (config.max_image_pixels) {
    const side = Math.floor(Math.sqrt(config.max_image_pixels));
    parts.push(`images up to ${config.max_image_pixels.toLocaleString('en')} pixels ` +
               `(e.g. ${side} x ${side})`);
  }
  if (config.max_body_bytes) {
    parts.push(`requests up to ${(config.max_body_bytes / 1048576).toFixed(1)} MiB`);
  }
  return parts.length ? `This server takes ${parts.join(', ')}.` : '';
}

// One <option> per model, from the server's own status and metadata.
async function addModel(name) {
  const option = document.createElement('option');
  option.value = name;
  try {
    const [status, meta] = await Promise.all([getJson(modelUrl(name)),
                                              getJson(`${modelUrl(name)}/metadata`)]);
    if (!meta.ok) throw new Error(meta.body && meta.body.error || `HTTP ${meta.status}`);
    const version = meta.body.model_spec.version;
    const defs = meta.body.metadata.signature_def.signature_def;
    const states = status.ok ? status.body.model_version_status.length : 0;
    option.textContent = `${name} (version ${version})`;
    option.title = `${states} version(s) known to the server`;
    if (!(SIGNATURE in defs)) {
      option.disabled = true;
      option.textContent = `${name} (no ${SIGNATURE} signature)`;
    }
  } catch (e) {
    option.disabled = true;
    option.textContent = `${name} (unavailable: ${e.message})`;
  }
  return option;
}

async function loadModels() {
  let config = {models: [], examples: []};
  const reply = await getJson('ui/config.json').catch(() => ({ok: false}));
  if (reply.ok) config = reply.body;
  if (params.get('models')) config.models = params.get('models').split(',').filter(Boolean);
  $('limits').textContent = describeLimits(config);
  const options = await Promise.all(config.models.map(addModel));
  const select = $('model');
  select.replaceChildren(...options);
  const first = options.find((o) => !o.disabled);
  if (first) select.value = first.value;
  select.disabled = !first;
  const usable = options.filter((o) => !o.disabled).length;
  $('server-info').textContent = usable ?
      `${usable} model(s) with a ${SIGNATURE} signature on ${API || window.location.host}.` :
      `No model with a ${SIGNATURE} signature on ${API || window.location.host}.`;
  for (const name of config.examples || []) addExample(name);
  setState('ready', first ? 'Pick or drop an image, or click an example.' : '');
}

function addExample(path) {
  const button = document.createElement('button');
  const image = document.createElement('img');
  const name = path.split('/').pop();
  image.src = path.replace(/^\//, '');
  image.alt = name;
  button.title = `Translate ${name}`;
  button.dataset.example = name;
  button.append(image);
  button.addEventListener('click', async () => {
    const response = await fetch(image.src);
    setImage(name, new Uint8Array(await response.arrayBuffer()), response.headers.get(
        'Content-Type'));
  });
  $('examples').append(button);
}

async function setFile(file) {
  if (!file) return;
  setImage(file.name, new Uint8Array(await file.arrayBuffer()), file.type);
}

function setImage(name, bytes, type) {
  if (state.image) URL.revokeObjectURL(state.image.url);
  const url = URL.createObjectURL(new Blob([bytes], {type: type || 'application/octet-stream'}));
  state.image = {name, bytes, url};
  const input = $('input-image');
  input.hidden = false;
  $('input-size').textContent = `${name}, ${bytes.length.toLocaleString('en')} bytes`;
  input.onload = () => {
    $('input-size').textContent =
        `${name}, ${input.naturalWidth} x ${input.naturalHeight}, ` +
        `${bytes.length.toLocaleString('en')} bytes`;
  };
  input.onerror = () => { input.hidden = true; };  // the server will say what is wrong
  input.src = url;
  translate();
}

async function translate() {
  const model = $('model').value;
  if (!state.image || !model) return;
  const seq = ++state.seq;
  clearError();
  $('output-image').hidden = true;
  $('download').hidden = true;
  $('latency').textContent = '';
  setState('busy', `Translating ${state.image.name} with ${model}\u2026`);
  const body = JSON.stringify({signature_name: SIGNATURE,
                               instances: [{b64: toBase64(state.image.bytes)}]});
  const start = performance.now();
  let response;
  let text;
  try {
    response = await fetch(`${modelUrl(model)}:predict`, {
      method: 'POST', headers: {'Content-Type': 'application/json'}, body});
    text = await response.text();
  } catch (e) {
    if (seq === state.seq) showError(`Cannot reach the server: ${e.message}`);
    return;
  }
  const ms = performance.now() - start;
  if (seq !== state.seq) return;  // a newer request took over
  let payload = null;
  try { payload = JSON.parse(text); } catch (e) { payload = null; }
  if (!response.ok) {
    const message = payload && payload.error ? payload.error :
        (text.slice(0, 500) || response.statusText);
    showError(`HTTP ${response.status}: ${message}`);
    return;
  }
  const value = payload && payload.predictions && payload.predictions[0];
  if (!value || typeof value.b64 !== 'string') {
    showError(`Unexpected reply: ${text.slice(0, 300)}`);
    return;
  }
  showOutput(fromBase64(value.b64), model, ms);
}

function showOutput(png, model, ms) {
  if (state.outputUrl) URL.revokeObjectURL(state.outputUrl);
  state.outputUrl = URL.createObjectURL(new Blob([png], {type: 'image/png'}));
  const output = $('output-image');
  output.onload = () => {
    $('latency').textContent =
        `${output.naturalWidth} x ${output.naturalHeight}, ${Math.round(ms)} ms`;
    setState('done', `Translated ${state.image.name} with ${model} in ${Math.round(ms)} ms.`);
  };
  output.hidden = false;
  output.src = state.outputUrl;
  const stem = state.image.name.replace(/\.[^.]*$/, '') || 'image';
  const download = $('download');
  download.href = state.outputUrl;
  download.download = `${stem}_${model}.png`;
  download.hidden = false;
}

function bindEvents() {
  $('file').addEventListener('change', (e) => setFile(e.target.files[0]));
  $('model').addEventListener('change', translate);
  const drop = $('drop');
  for (const kind of ['dragenter', 'dragover']) {
    drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add('over'); });
  }
  for (const kind of ['dragleave', 'drop']) {
    drop.addEventListener(kind, () => drop.classList.remove('over'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    setFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') $('file').click();
  });
}

bindEvents();
loadModels().catch((e) => showError(`Cannot load the models: ${e.message}`));

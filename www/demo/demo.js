// The lmz demo: a consumer of the `lmz` package only.
// URL parameters (for links and the e2e tests): ?engine=auto|webgpu|cpu, ?heatmap=0.
import { createCompressor, info, isLmz, LmzError } from 'lmz';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.has('engine')) $('engine').value = params.get('engine');
if (params.get('heatmap') === '0') $('heatmap').checked = false;

const PHASES = { download: 'downloading the model', verify: 'checking the model (SHA-256)', load: 'loading the model', compress: 'compressing', decompress: 'decompressing', score: 'scoring tokens for the heat map' };
const fmt = (n) => n.toLocaleString('en-US');
const ENGINE_NAMES = { webgpu: 'WebGPU', cpu: 'wasm-CPU' };

let lz; // { choice, compressor: Promise<Compressor> }
let running; // AbortController of the call in progress
const urls = [];

function setState(state) {
  document.body.dataset.state = state;
  $('compress').disabled = state === 'busy';
  $('file').disabled = state === 'busy';
  $('cancel').disabled = state !== 'busy';
}

function progress(p) {
  const label = PHASES[p.phase] ?? p.phase;
  const note = p.note === 'cache-corrupt' ? ' (the cached copy was corrupt: downloading again)' : p.note === 'cached' ? ' (from Cache Storage)' : '';
  const amount = p.total && p.phase !== 'load' ? ` ${fmt(p.done)} / ${fmt(p.total)}${p.phase === 'score' ? ' tokens' : ' bytes'}` : '';
  $('phase').textContent = label + note + amount;
  $('bar').value = p.total ? p.done / p.total : 0;
}

function showError(e) {
  const code = e instanceof LmzError ? e.code : e?.code ?? e?.name ?? 'Error';
  $('error').hidden = false;
  $('error').textContent = `${code}: ${e?.message ?? e}`;
  document.body.dataset.errorCode = code;
  $('phase').textContent = 'failed';
  $('bar').value = 0;
  setState('error');
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
  delete document.body.dataset.errorCode;
}

function blobUrl(data, type = 'application/octet-stream') {
  const u = URL.createObjectURL(data instanceof Blob ? data : new Blob([data], { type }));
  urls.push(u);
  return u;
}

async function compressor() {
  const choice = $('engine').value;
  if (!lz || lz.choice !== choice) {
    if (lz) (await lz.compressor.catch(() => undefined))?.dispose();
    lz = { choice, compressor: createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: choice, worker: true, onProgress: progress }) };
    lz.compressor.catch(() => (lz = undefined));
  }
  const c = await lz.compressor;
  $('engine-info').textContent = `engine: ${ENGINE_NAMES[c.engine]} — ${c.adapter}`;
  document.body.dataset.engine = c.engine;
  return c;
}

async function gzipSize(bytes) {
  const s = new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'));
  return (await new Response(s).arrayBuffer()).byteLength;
}

function renderHeatmap(bytes, scores) {
  const box = $('heatmap-text');
  box.textContent = '';
  const dec = new TextDecoder('utf-8');
  let at = 0;
  let carry = 0; // bits of an escape token, given to the byte it escapes
  const frag = document.createDocumentFragment();
  for (let i = 0; i < scores.lengths.length; i++) {
    const n = scores.lengths[i];
    const bits = scores.bits[i] + carry;
    if (n === 0) {
      carry = bits;
      continue;
    }
    carry = 0;
    const text = dec.decode(bytes.subarray(at, at + n), { stream: true });
    at += n;
    const span = document.createElement('span');
    span.textContent = text;
    const t = Math.min(bits / 16, 1);
    span.style.background = `hsl(${120 - 120 * t} 70% ${85 - 10 * t}%)`;
    span.title = `${bits.toFixed(2)} bits`;
    span.dataset.bits = bits.toFixed(3);
    frag.append(span);
  }
  box.append(frag);
  $('heat').hidden = false;
}

async function run(task) {
  clearError();
  running = new AbortController();
  setState('busy');
  try {
    await task(running.signal);
    setState('done');
  } catch (e) {
    showError(e);
  } finally {
    running = undefined;
  }
}

async function compressBytes(bytes, name, signal) {
  $('opened').hidden = true;
  $('heat').hidden = true;
  const c = await compressor();
  const t0 = performance.now();
  const file = await c.compress(bytes, { signal, onProgress: progress });
  const secs = (performance.now() - t0) / 1000;
  const gz = await gzipSize(bytes);
  const bpb = (n) => (bytes.length ? ((8 * n) / bytes.length).toFixed(3) : '—');
  const ratio = (n) => (n ? (bytes.length / n).toFixed(2) + '×' : '—');
  $('orig-bytes').textContent = fmt(bytes.length);
  $('lmz-bytes').textContent = fmt(file.length);
  $('lmz-bpb').textContent = bpb(file.length);
  $('lmz-ratio').textContent = ratio(file.length);
  $('gzip-bytes').textContent = fmt(gz);
  $('gzip-bpb').textContent = bpb(gz);
  $('gzip-ratio').textContent = ratio(gz);
  $('timing').textContent = `compressed in ${secs.toFixed(1)} s (${fmt(Math.round(bytes.length / secs))} B/s) on ${ENGINE_NAMES[c.engine]}`;
  const a = $('download');
  a.href = blobUrl(file);
  a.download = `${name}.lmz`;
  $('results').hidden = false;
  $('phase').textContent = 'compressed';
  $('bar').value = 1;
  let text = null;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    /* binary: no heat map */
  }
  if ($('heatmap').checked && text !== null && bytes.length <= 64 * 1024) {
    const scores = await c.score(bytes, { signal, onProgress: progress });
    renderHeatmap(bytes, scores);
    $('phase').textContent = 'compressed; heat map ready';
  }
}

/** Decompresses with the package's stream: the text appears chunk by chunk as the model
 * decodes it (a file of several chunks, such as the CLI makes of long texts, shows its
 * first part while the rest is still being decoded). */
async function decompressBytes(bytes, name, signal) {
  $('results').hidden = true;
  $('heat').hidden = true;
  const c = await compressor();
  const head = await info(bytes);
  const t0 = performance.now();
  const parts = [];
  const shown = new TextDecoder('utf-8');
  const strict = new TextDecoder('utf-8', { fatal: true });
  let text = true; // valid UTF-8 so far
  $('output').textContent = '';
  $('opened-info').textContent = `${name}: decoding ${head.chunks.length} chunk(s)…`;
  $('download-original').hidden = true;
  $('opened').hidden = false;
  const reader = new Blob([bytes]).stream().pipeThrough(c.decompressStream({ signal, onProgress: progress })).getReader();
  for (;;) {
    let r;
    try {
      r = await reader.read();
    } catch (e) {
      // What came out before the error is unverified: do not leave it on the page.
      $('opened').hidden = true;
      throw e;
    }
    const { done, value } = r;
    if (done) break;
    parts.push(value);
    try {
      if (text) strict.decode(value, { stream: true });
    } catch {
      text = false;
    }
    if (text) $('output').textContent += shown.decode(value, { stream: true });
  }
  const secs = (performance.now() - t0) / 1000;
  try {
    if (text) strict.decode();
  } catch {
    text = false;
  }
  const n = parts.reduce((s, p) => s + p.length, 0);
  if (text) $('output').textContent += shown.decode();
  else $('output').textContent = `(binary data, ${fmt(n)} bytes)`;
  $('opened-info').textContent = `${name}: ${fmt(bytes.length)} → ${fmt(n)} bytes (${head.form} form, ${head.chunks.map((ch) => ch.method).join(' + ') || 'empty'}, ${head.bpb.toFixed(3)} bpb), checksum verified; decompressed in ${secs.toFixed(1)} s on ${ENGINE_NAMES[c.engine]}`;
  const a = $('download-original');
  a.href = blobUrl(new Blob(parts));
  a.download = name.replace(/\.lmz$/, '') || 'original';
  a.hidden = false;
  $('phase').textContent = 'decompressed';
  $('bar').value = 1;
}

async function openFile(f) {
  const bytes = new Uint8Array(await f.arrayBuffer());
  if (isLmz(bytes) || f.name.endsWith('.lmz')) await run((s) => decompressBytes(bytes, f.name, s));
  else await run((s) => compressBytes(bytes, f.name, s));
}

$('compress').addEventListener('click', () => run((s) => compressBytes(new TextEncoder().encode($('text').value), 'text.txt', s)));
$('cancel').addEventListener('click', () => running?.abort());
$('file').addEventListener('change', (ev) => {
  const f = ev.target.files[0];
  ev.target.value = '';
  if (f) openFile(f);
});
document.addEventListener('dragover', (ev) => {
  ev.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', (ev) => {
  ev.preventDefault();
  document.body.classList.remove('dragging');
  const f = ev.dataTransfer?.files[0];
  if (f && document.body.dataset.state !== 'busy') openFile(f);
});
$('engine').addEventListener('change', () => {
  $('engine-info').textContent = '';
});
document.body.dataset.ready = '1';

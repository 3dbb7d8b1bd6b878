// Builds the dashboard into dist/: index.html, assets/app.js (our modules
// and uPlot, bundled and minified) and assets/app.css. The daemon's build
// embeds whatever is in dist/ (crates/gateway/build.rs).
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';

const dist = new URL('./dist/', import.meta.url);
await rm(dist, { recursive: true, force: true });
await mkdir(new URL('assets/', dist), { recursive: true });

await build({
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: 'dist/assets',
  loader: { '.css': 'css' },
  legalComments: 'eof',
  logLevel: 'warning',
});
await copyFile(new URL('./index.html', import.meta.url), new URL('index.html', dist));
console.log('dashboard built into web/dist');

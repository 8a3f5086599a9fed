#!/usr/bin/env node
// A `solc` command backed by solc-js from npm, for machines that cannot download a native compiler.
// It answers the two calls py-solc-x (and so ape-solidity) makes: `--version` and `--standard-json`.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const args = process.argv.slice(2);
const out = (text) => fs.writeSync(1, text);

if (args.includes('--version') || args.includes('-v')) {
  out(`solc, the solidity compiler commandline interface\nVersion: ${solc.version().replace('.Emscripten.clang', '')}.Linux.g++\n`);
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  fs.writeSync(2, 'solc-shim: only --version and --standard-json are supported\n');
  process.exit(1);
}

// Directories that imports may resolve against: --base-path, --include-path and --allow-paths, then the cwd.
const roots = [];
for (let i = 0; i < args.length; i++) {
  if (['--base-path', '--include-path'].includes(args[i]) && args[i + 1]) roots.push(args[++i]);
  else if (args[i] === '--allow-paths' && args[i + 1]) roots.push(...args[++i].split(','));
}
roots.push(process.cwd());

function findImports(importPath) {
  for (const root of roots) {
    const candidate = path.resolve(root, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  return { error: `File not found: ${importPath}` };
}

const input = fs.readFileSync(0, 'utf8');
out(solc.compile(input, { import: findImports }));

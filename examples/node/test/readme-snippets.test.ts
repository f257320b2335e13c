/**
 * Every TypeScript snippet of the READMEs (README.md, packages/*\/README.md, examples/*\/README.md)
 * compiles against the packages' public types and runs as written, on the cpu backend, in a fresh
 * working folder. A snippet is a module: its `import` lines, then statements (top-level `await`
 * allowed). A block right after a line `<!-- snippet: not run (reason) -->` is skipped, and the
 * test lists those with their reasons. What snippets print with `console.log` is silenced.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import * as tf from '@tensorflow/tfjs';

const ROOT = path.resolve(__dirname, '../../..');
const NOT_RUN = /<!--\s*snippet:\s*not run\s*\(([^)]*)\)\s*-->\s*$/;

interface Snippet {
  file: string;
  line: number;
  code: string;
  skip?: string;
}

function readmes(): string[] {
  const under = (dir: string) => fs.readdirSync(path.join(ROOT, dir)).map((d) => path.join(dir, d, 'README.md')).filter((f) => fs.existsSync(path.join(ROOT, f)));
  return ['README.md', ...under('packages'), ...under('examples')];
}

function snippets(): Snippet[] {
  const out: Snippet[] = [];
  for (const file of readmes()) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/```ts\n([\s\S]*?)```/g)) {
      const before = text.slice(0, m.index).replace(/\n+$/, '');
      const line = before.split('\n').length + 1;
      const lastLine = before.slice(before.lastIndexOf('\n') + 1);
      out.push({file, line, code: m[1], skip: NOT_RUN.exec(lastLine)?.[1]});
    }
  }
  return out;
}

/** The snippet as a module exporting `run()`: its imports stay at the top, the rest moves into the function. */
function asModule(code: string): string {
  const lines = code.split('\n');
  const imports = lines.filter((l) => /^import\s/.test(l));
  const body = lines.filter((l) => !/^import\s/.test(l));
  const exported = body.some((l) => /^export\s/.test(l));
  return exported ? code : `${imports.join('\n')}\nexport async function run(): Promise<void> {\n${body.join('\n')}\n}\n`;
}

const all = snippets();
const runnable = all.filter((s) => !s.skip);
// Inside the repository (gitignored), so that the packages resolve as they do for the examples.
const dir = fs.mkdtempSync(path.join(ROOT, 'examples/node/.snippets-'));
const files = runnable.map((s, i) => {
  const f = path.join(dir, `s${i}_${path.basename(path.dirname(path.join(ROOT, s.file))).replace(/\W/g, '_')}_${s.line}.ts`);
  fs.writeFileSync(f, asModule(s.code));
  return f;
});
const where = (i: number) => `${runnable[i].file}:${runnable[i].line}`;

afterAll(() => fs.rmSync(dir, {recursive: true, force: true}));

test('the READMEs hold TypeScript snippets, and every skipped one says why', () => {
  expect(runnable.length).toBeGreaterThan(8);
  for (const s of all.filter((x) => x.skip)) expect(s.skip!.trim().length).toBeGreaterThan(5);
  console.info(`README snippets: ${runnable.length} run; not run: ${all.filter((s) => s.skip).map((s) => `${s.file}:${s.line} (${s.skip})`).join(', ') || 'none'}`);
});

test('every README snippet compiles against the public types', () => {
  const options: ts.CompilerOptions = {
    noEmit: true, strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler,
    esModuleInterop: true, skipLibCheck: true, types: ['node'], lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
  };
  const program = ts.createProgram(files, options);
  const errors = ts.getPreEmitDiagnostics(program).filter((d) => d.file && files.includes(path.resolve(d.file.fileName)));
  const messages = errors.map((d) => {
    const i = files.indexOf(path.resolve(d.file!.fileName));
    const {line} = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
    return `${where(i)} (snippet line ${line}): ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
  expect(messages).toEqual([]);
}, 120000);

describe('every README snippet runs [cpu]', () => {
  const cwd = process.cwd();
  let work: string;
  beforeEach(async () => {
    // Each snippet starts on cpu (one that calls setupBackend() may leave another backend behind).
    await tf.setBackend('cpu');
    await tf.ready();
    expect(tf.getBackend()).toBe('cpu');
  });
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'readme-snippets-'));
    process.chdir(work); // snippets write relative paths (out/..., runs/...)
  });
  afterAll(() => {
    process.chdir(cwd);
    fs.rmSync(work, {recursive: true, force: true});
  });

  it.each(runnable.map((_s, i) => [where(i), i]))('%s', async (_where, i) => {
    const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      const mod = require(files[i as number]) as {run?: () => Promise<void>};
      if (mod.run) await mod.run();
    } finally {
      log.mockRestore();
    }
    // A snippet that throws fails the test above, with its message.
  }, 120000);
});

/**
 * Headless Debian Chromium for the browser example's end-to-end test and benchmark, driven by
 * playwright-core with the system browser (`apt-get install chromium`; never a downloaded one).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The system Chromium that CI installs with apt. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Flags for headless Chromium without a GPU: WebGL through ANGLE on SwiftShader, WebGPU through
 * Dawn on SwiftShader's Vulkan; nothing reaches the network.
 */
export const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-default-apps',
  '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
  '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--enable-features=Vulkan',
];

/** A launched browser: its context and a close function that also removes the profile. */
export interface LaunchedChromium {
  context: import('playwright-core').BrowserContext;
  close(): Promise<void>;
}

/**
 * Launches Chromium (headless unless `options.headless` is false, which needs a display, e.g.
 * under `xvfb-run`) with {@link CHROMIUM_FLAGS} (or `options.args`) and a throw-away profile.
 * Throws if {@link CHROMIUM} is missing.
 *
 * @example
 * ```ts
 * const {context, close} = await launchChromium();
 * const page = await context.newPage();
 * await page.goto('http://127.0.0.1:8080/?backend=webgpu');
 * await close();
 * ```
 */
export async function launchChromium(options: {args?: string[]; headless?: boolean} = {}): Promise<LaunchedChromium> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing (apt-get install -y chromium; CI installs it in .ci/run)`);
  }
  const {chromium} = await import('playwright-core');
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: options.headless ?? true, args: options.args ?? CHROMIUM_FLAGS,
  });
  return {
    context,
    close: async () => {
      await context.close();
      fs.rmSync(userDataDir, {recursive: true, force: true});
    },
  };
}

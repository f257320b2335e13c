/**
 * `npm run serve -w @tfjs-moe/example-browser [-- --port=8080]`: serves the example on
 * localhost with COOP/COEP headers. Build first (`npm run build`) and put a model in
 * public/model/ (`npm run model`, or `tfjs-moe train --out examples/browser/public/model`).
 */
import {parseArgs} from 'util';
import {startServer} from './server';

const {port} = parseArgs({options: {port: {type: 'string'}}, strict: true, allowPositionals: false}).values;
startServer({port: port ? Number(port) : 8080}).then((s) => {
  console.log(`tfjs-moe browser example on ${s.url} (cross-origin isolated; Ctrl-C to stop)`);
});

/**
 * Renders a report from a JSON file of ReportData in a plain Node process (vega and vega-lite are
 * ES modules, which jest's CommonJS runtime cannot import). Usage: tsx render-report.ts in.json out.html
 */
import * as fs from 'fs';
import {renderReport, type ReportData} from '../../src/report/html';

const [input, output] = process.argv.slice(2);
renderReport(JSON.parse(fs.readFileSync(input, 'utf8')) as ReportData).then((html) => fs.writeFileSync(output, html));

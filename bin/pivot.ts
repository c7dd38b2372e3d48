#!/usr/bin/env bun
import { main } from "../src/cli/engine.ts";

process.exitCode = await main(process.argv.slice(2));

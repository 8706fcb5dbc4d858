// Entry point of the command-line interface: parses arguments, loads and
// validates configuration, sets up logging, runs one subcommand, records the
// run in the state store and maps failures to exit codes.
// Thread safety: call once from main().
#pragma once

namespace mlk::cli {

int run(int argc, char** argv);

}  // namespace mlk::cli

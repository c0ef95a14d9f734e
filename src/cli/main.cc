#include "mandate/cli/cli.h"

int main(int argc, char** argv) { return mandate::cli::Run(argc, argv); }

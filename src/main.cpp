// mlkeeper: keeps GPU/ML servers healthy. Everything lives in mlkeeper_core.
#include "mlkeeper/cli/cli.hpp"

int main(int argc, char** argv) {
    return mlk::cli::run(argc, argv);
}

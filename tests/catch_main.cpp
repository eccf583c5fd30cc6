// The test runner's main (Catch2 2 compiles its implementation into this file; Catch2 3 links it).
#define CATCH_CONFIG_RUNNER
#include "tests/catch.h"

int main(int argc, char** argv) { return Catch::Session().run(argc, argv); }

// The model shapes of configs/ (the hub's config.json of each known model), built into the binary so that
// `flashcore bench --synthetic llama-3.1-8b` works from any directory and from an installed copy: the
// lookup by name never reads the file system (not the working directory, not the source tree). The same
// files are installed to PREFIX/share/flashcore/configs for people to read.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace fc {

// One configs/NAME.json, embedded at build time (apps/CMakeLists.txt generates the table).
struct BuiltinShape {
  const char* name;  // "llama-3.1-8b": the file name without .json
  const char* json;  // the file's bytes, as checked in
};
const std::vector<BuiltinShape>& builtin_shapes();  // sorted by name
std::string builtin_shape_names();                  // "llama-3.1-8b, llama-3.2-1b, ..." for messages

// A spec with a '/' or ending in ".json" is a path to a config.json (relative to the working directory,
// like any path on the command line); anything else is the name of a built-in shape.
bool is_shape_path(const std::string& spec);

// Empty when `spec` names a built-in shape or an existing file; else the one-line reason, with the
// built-in names (for option validators: nothing is parsed).
std::string check_model_shape(const std::string& spec);

struct ModelShape {
  Config config;
  std::string source;  // "built-in llama-3.1-8b" or the path read
};
// Resolves and parses `spec`; `option` ("--synthetic", "--config") starts the error messages. Throws
// fc::Error: an unknown name (listing the built-in ones), a missing file, invalid JSON, a bad config.
ModelShape load_model_shape(const std::string& spec, const std::string& option);

}  // namespace fc

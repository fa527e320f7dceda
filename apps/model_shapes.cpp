#include "apps/model_shapes.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace fc {

namespace {

const BuiltinShape* find_builtin(const std::string& name) {
  for (const BuiltinShape& shape : builtin_shapes()) {
    if (name == shape.name) return &shape;
  }
  return nullptr;
}

Config parse_shape(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", source, e.what());
  }
  return parse_config(j, source);
}

std::string unknown_name_message(const std::string& spec) {
  return spec + ": no built-in model shape of that name (built in: " + builtin_shape_names() +
         "; or give a config.json path)";
}

}  // namespace

std::string builtin_shape_names() {
  std::string names;
  for (const BuiltinShape& shape : builtin_shapes()) {
    if (!names.empty()) names += ", ";
    names += shape.name;
  }
  return names;
}

bool is_shape_path(const std::string& spec) {
  const std::string suffix = ".json";
  return spec.find('/') != std::string::npos ||
         (spec.size() >= suffix.size() && spec.compare(spec.size() - suffix.size(), suffix.size(), suffix) == 0);
}

std::string check_model_shape(const std::string& spec) {
  if (is_shape_path(spec)) return file_exists(spec) ? "" : spec + ": no such file";
  return find_builtin(spec) ? "" : unknown_name_message(spec);
}

ModelShape load_model_shape(const std::string& spec, const std::string& option) {
  if (is_shape_path(spec)) {
    if (!file_exists(spec)) fail("{} {}: no such file", option, spec);
    return {parse_shape(read_text_file(spec), spec), spec};
  }
  const BuiltinShape* shape = find_builtin(spec);
  if (!shape) throw Error(option + " " + unknown_name_message(spec));
  const std::string source = "built-in " + spec;
  return {parse_shape(shape->json, source), source};
}

}  // namespace fc

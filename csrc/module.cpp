// The extension module glamor_fast._C: `import glamor_fast._C` loads this shared library, whose
// static initialisers run every registration. The glamor_fast namespace is claimed here; each op
// adds its schemas from its own folder (<op>/schema.cpp, TORCH_LIBRARY_FRAGMENT) and its kernels
// per dispatch key (<op>/cpu/, gla/cuda/); fake kernels and autograd are registered from Python
// (glamor_fast/ops/).
#include <Python.h>
#include <torch/library.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(glamor_fast, m) {}

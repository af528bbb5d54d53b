import subprocess
import sys


def test_import_vidbatch_is_light():
    code = (
        "import sys, vidbatch; heavy = [m for m in ('cv2', 'keras', 'tensorflow', 'ray', 'jax', 'torch') if m in sys.modules];"
        "print(heavy); assert not heavy, heavy; assert callable(vidbatch.label)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip() == "[]"
